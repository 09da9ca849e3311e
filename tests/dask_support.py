"""A real ``dask.distributed`` ``LocalCluster`` for the tests: 2 worker processes on 127.0.0.1,
its HTTP server on a free port (never the fixed 8787, which another test run may hold)."""

from __future__ import annotations

from collections.abc import Iterator

from distributed import Client, LocalCluster


def local_cluster_client(workers: int = 2) -> Iterator[Client]:
    """A client of a new cluster; the cluster is closed when the generator is."""
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    )
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
