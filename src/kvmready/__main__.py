"""`python -m kvmready` runs the same CLI as the `kvmready` script."""

from kvmready.cli import main

if __name__ == "__main__":
    main()
