"""Run several `rm-edit` commands in one process of a multi-process launch (tests/test_distributed.py):
``python -m torch.distributed.run --nproc_per_node 2 tests/dist_driver.py '<json list of argv lists>'``."""

import json
import os
import sys

import torch

if __name__ == "__main__":
    torch.set_num_threads(1)
    os.environ["HF_HUB_OFFLINE"] = "1"
    from rm_edit.cli import main

    for argv in json.loads(sys.argv[1]):
        rc = main(argv)
        if rc not in (0, 1):  # 1: some items failed (the tests include a bad one)
            sys.exit(f"{argv[0]} exited with {rc}")
