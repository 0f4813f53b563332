"""The project's main job: `python -m draftattn_cuda.bench` (code in draftattn_cuda/benchmark/)."""
from .benchmark.cli import main

if __name__ == "__main__":
    main()
