"""The `vivarl` command: compose the config, build the job, run it."""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from improve.config import register_configs, to_dataclass

register_configs()
# PyOpenGL announces at INFO that an optional accelerator is absent; it is noise in every run's log.
logging.getLogger("OpenGL.acceleratesupport").setLevel(logging.WARNING)


@hydra.main(version_base=None, config_path="../configs", config_name="config")
def main(cfg: DictConfig) -> None:
    from improve.demo import record_expert_batch

    try:
        config = to_dataclass(cfg)
    except ValueError as err:
        # Config validation errors are for the user, not a stack trace.
        raise SystemExit(f"vivarl: bad config: {err}") from None
    record_expert_batch(config)


if __name__ == "__main__":
    main()
