"""TMS's additions to the local AWS emulator (LocalStack's Python package, run on the host)."""
