"""The per-attempt sandbox: bubblewrap confinement, the filtered environment, the network gate."""
