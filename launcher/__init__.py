"""The launcher: the `nodal` command (cli), the embedded stack (dev), the demo network and traffic (seed, demo)
and the worker wiring. It sits on top: nothing in the product imports it."""
