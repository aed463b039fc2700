"""The one training core every task uses: run folders, checkpoints, the loop, data-parallel
processes and logging."""
