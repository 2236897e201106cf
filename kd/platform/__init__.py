"""The monitoring platform (监控平台): requests client, simulator server, offline signer."""
