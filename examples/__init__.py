"""Example workflows for batchai: `python -m examples.demo` is the reference one."""
