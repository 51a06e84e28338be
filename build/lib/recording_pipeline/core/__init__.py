"""The core: parsing, planning, naming, state and policy. No I/O imports (a test proves it)."""
