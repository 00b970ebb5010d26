import pytest
import ray


@pytest.fixture(scope="module")
def local_ray():
    """A real local Ray instance (2 CPUs) per module; address="local": never another cluster here."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def pytest_collection_modifyitems(items):
    for item in items:  # starting Ray takes seconds and what runs on it trains: every test on Ray is slow
        if "local_ray" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
