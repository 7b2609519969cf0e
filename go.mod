module github.com/clover-sched/clover

go 1.26.8
