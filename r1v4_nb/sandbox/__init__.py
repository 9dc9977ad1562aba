"""The sandbox that runs model-written Python: a persistent worker process per trajectory.

`client.Worker` (kernel side) starts and talks to `worker.py` (the child) over
pipes with `protocol`; `contain` puts the child in its namespaces and limits;
`helpers` is the module the model's code imports. Nothing here imports numpy,
PIL or cv2 at module level on the kernel side.
"""
