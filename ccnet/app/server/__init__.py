"""What any public web app needs, apart from what it shows: bounded disk (disk, upload_limit),
bounded requests (body_limit), fair queueing (fairness), which files a request may name (uploads),
a clean stop (shutdown), ZeroGPU (zerogpu), the allocator's opt-in (allocator) and the launch
settings (launch). Nothing here imports the explorer's logic; the limits are ccnet.limits."""
