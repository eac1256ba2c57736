# Pico W entry point (MicroPython runs /main.py after boot). config.json sits beside it.
from pgsensor.app import main

main()
