"""`python train.py [overrides]` in a clone; `ptrain train [overrides]` anywhere ptrain is installed. Both run
`ptrain.train.main` on the packaged configs (ptrain/conf/train.yaml; see the README)."""

from ptrain.train import main

if __name__ == "__main__":
    main()
