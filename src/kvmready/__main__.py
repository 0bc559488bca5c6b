"""`python -m kvmready` runs the same CLI as the `kvmready` script."""

from kvmready._entry import main

if __name__ == "__main__":
    main()
