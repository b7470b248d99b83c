"""What the tests (memberflow_assets_tests/) and the benchmarks (bench/) share: synthetic images and a
headless browser with the network closed. Plain code, no pytest: a benchmark imports it as it is. Not part
of the code location (nothing in definitions imports it) and kept out of the production image
(deploy/Dockerfile.dockerignore)."""
