"""``python -m formats save|parity|inspect|providers|view|convert|verify``."""

from formats.cli import main

main()
