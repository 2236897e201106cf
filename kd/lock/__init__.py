"""The exam dongle (机考锁): serial protocol, pyserial driver, emulator (docs/lock-protocol.md)."""
