"""The `vivarl` commands: compose the config, build the run object, run it.

vivarl [overrides]        the overnight improvement loop (resume: the same run_dir=...)
vivarl-demo [overrides]   a batch of scripted-expert episodes in the simulator, as a video and a summary
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from improve.config import VivarlConfig, register_configs, to_dataclass

register_configs()
# PyOpenGL announces at INFO that an optional accelerator is absent; it is noise in every run's log.
logging.getLogger("OpenGL.acceleratesupport").setLevel(logging.WARNING)


def _resolve(cfg: DictConfig) -> VivarlConfig:
    try:
        return to_dataclass(cfg)
    except ValueError as err:
        # Config validation errors are for the user, not a stack trace.
        raise SystemExit(f"vivarl: bad config: {err}") from None


@hydra.main(version_base=None, config_path="../configs", config_name="config")
def main(cfg: DictConfig) -> None:
    from improve.driver import RoundDriver

    RoundDriver(_resolve(cfg)).run()


@hydra.main(version_base=None, config_path="../configs", config_name="config")
def demo_main(cfg: DictConfig) -> None:
    from improve.demo import record_expert_batch

    record_expert_batch(_resolve(cfg))


if __name__ == "__main__":
    main()
