"""The outside probe kept as a suite (issue 22): each case failed before its fix."""
