"""The console-script entry point, kept free of imports so it can tune start-up.

A run of kvmready allocates a few hundred thousand objects in imports and
frees almost none of them before exit, so the cyclic garbage collector only
costs time: its passes during the imports, and its sweep at interpreter
shutdown (together about 13 ms of a ~60 ms run).  It is switched off for the
run and everything left is frozen before exit, so finalisation skips it.
"""

import gc


def main() -> None:
    gc.disable()
    try:
        from kvmready.cli import main as cli_main

        cli_main()
    finally:
        gc.freeze()
