"""``python -m modelport.cli``: the same as the ``modelport`` command."""

from modelport.cli import main

main()
