"""The ``ioc`` command: wires the parts together (the only package that imports them all)."""
