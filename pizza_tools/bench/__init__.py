"""`pizza bench` (README, Performance): the service measured against the factory, side by side.

- ``runner``: runs every measurement in order and writes the report;
- ``harness``: starts the simulator and the services, sends timed and counted load;
- ``plan``: how long each measurement runs (the full bench, or ``--quick``);
- ``load``: the load generator, run as its own process (``python -m pizza_tools.bench.load``);
- ``procs``: the child processes (``pizza factory-sim``, ``pizza serve``) and their CPU;
- ``stores``: the bench's own database and Redis db, and the OTLP sink;
- ``report``: the JSON report, its targets and the table on stdout.
"""
