"""The capture proxy: forwards traffic to the model server and samples it into capture files."""
