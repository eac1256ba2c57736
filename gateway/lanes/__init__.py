"""What the gateway tells and asks the lanes: signed commands, the replicas a lane decides
from when offline, the lot-full count, and the conflicts an offline lane leaves behind."""
