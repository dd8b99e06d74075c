"""`opsbot demo` (./scripts/demo): the shell against small local demo targets, so every example succeeds.

Modules: targets (the demo app: health endpoints, a flag admin API, a metric; :break/:fix), main (starting the
targets, the demo config and the shell with its :break/:fix/:tick commands), smoke (the smoke script behind
./scripts/smoke, standard library only), rollback and restart (harmless commands the demo config runs).
Kept free of imports here so `python -m bot.demo.smoke` starts with the standard library alone."""
