"""Entry point: `python train.py [overrides]` (see conf/train.yaml and the README)."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from ptrain.train import train

    results = train(cfg)
    return results["metrics"].get(f"val/{results['main_metric']}")


if __name__ == "__main__":
    main()
