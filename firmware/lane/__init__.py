"""One lane node: camera, plate read, decision and barrier, working with or without the gateway."""
