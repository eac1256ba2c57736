# Patrol reader entry point: copied to the Pico W as /main.py (MicroPython runs it after
# boot); config.json (kind "patrol") sits beside it.
from pgsensor.patrol import main

main()
