"""Keep the TFLite runtime's start-up chatter off the terminal of ``parkguard read``.

LiteRT prints ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` from C++ straight
to file descriptor 2 when the first interpreter applies its default XNNPACK delegate.
Neither of the usual switches turns it off here (measured with ai-edge-litert 2.3.0):
``TF_CPP_MIN_LOG_LEVEL`` governs TensorFlow's logger, not TFLite's minimal logger, whose
severity setter the wheel does not export; and creating the interpreter without the
default delegates (``OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES``) silences it at a
cost of 4-5x per read (detector 0.31 -> 1.59 ms, recogniser 1.10 -> 5.37 ms on this host).

So, while our interpreters are built, descriptor 2 goes to a temporary file; afterwards
every line of it is written back to stderr except the runtime's INFO lines. A warning or
an error the runtime prints then still reaches the person, and nothing outside that
window is touched.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

#: What the TFLite runtime says at INFO level from C++ (``tflite::logging_internal``).
RUNTIME_INFO = re.compile(r"^INFO: ")


@contextmanager
def runtime_info_dropped() -> Iterator[None]:
    """Within the block, native writes to stderr are held; on leaving it they are written
    back without the runtime's ``INFO:`` lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().decode("utf-8", "replace")
                    .splitlines(keepends=True) if not RUNTIME_INFO.match(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
