"""The `vivarl` command: compose the config, build the job, run it."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from improve.config import register_configs, to_dataclass

register_configs()


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
