"""Sans-IO AMI and FastAGI: bytes in, typed messages out, with no sockets and no
event loop, so the asyncio client and the FastAGI server stay thin and every byte
case is a unit test."""
