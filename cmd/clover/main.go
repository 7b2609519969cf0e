// Command clover is the single Clover binary: servers, clients and the operator commands.
package main

import (
	"os"

	"github.com/clover-sched/clover/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
