"""The run directory: what one run owns on disk and on the host (`run`): its lock and config
(`workdir`), checkpoints (`checkpoint`), metrics log (`metrics_log`) and how it stops on a
signal (`preemption`)."""
