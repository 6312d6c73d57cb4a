"""Use cases: create (and accept an external signature, cancel, retry) in desk.py; prepare,
send and confirm in prepare.py, send.py and confirm.py, run as loops by pipeline.py. They call
the pure core for decisions and the adapters for I/O; the gRPC edge and the programs call
them."""
