package monitor

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

type metrics struct {
	checks      prometheus.Counter
	checkErrors *prometheus.CounterVec // by check
	problems    *prometheus.GaugeVec   // by kind
	known       map[string]bool        // kinds set before, to zero them when they clear
}

func newMetrics(reg *prometheus.Registry, active *atomic.Bool) *metrics {
	m := &metrics{
		checks: prometheus.NewCounter(prometheus.CounterOpts{Name: "clover_monitor_checks_total", Help: "Check cycles this monitor ran."}),
		checkErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clover_monitor_check_errors_total",
			Help: "Checks that could not read what they needed, by check."}, []string{"check"}),
		problems: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "clover_monitor_problems",
			Help: "Problems open at the last check, by kind (alert on > 0)."}, []string{"kind"}),
		known: map[string]bool{},
	}
	reg.MustRegister(m.checks, m.checkErrors, m.problems,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "clover_monitor_active", Help: "1 while this monitor is the active one."},
			func() float64 {
				if active.Load() {
					return 1
				}
				return 0
			}),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) setProblems(byKind map[string]int) {
	for k := range m.known {
		if _, ok := byKind[k]; !ok {
			m.problems.WithLabelValues(k).Set(0)
		}
	}
	for k, n := range byKind {
		m.known[k] = true
		m.problems.WithLabelValues(k).Set(float64(n))
	}
}
