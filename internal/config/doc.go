// Package config loads Clover's configuration with viper: defaults from a struct, then a file, then
// CLOVER_* environment variables, then flags, unmarshalled into a struct with mapstructure tags. It also holds
// the sections that servers, clients and the monitor share (ZooKeeper, MongoDB).
package config
