"""The per-attempt sandbox: bubblewrap confinement, the filtered environment and the network gate."""
