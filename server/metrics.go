package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clover-sched/clover/internal/transport"
)

// metrics are a server's Prometheus series, registered on the registry passed to New.
type metrics struct {
	isLeader         prometheus.Gauge
	epoch            prometheus.Gauge
	leaderChanges    prometheus.Counter
	fires            *prometheus.CounterVec // by trigger
	duplicateFires   prometheus.Counter
	misfires         *prometheus.CounterVec // by policy
	skipped          *prometheus.CounterVec // by reason
	retries          prometheus.Counter
	orphaned         prometheus.Gauge
	overdue          prometheus.Counter
	leaseLapses      prometheus.Counter
	timeouts         prometheus.Counter
	stops            prometheus.Counter
	fireLateness     prometheus.Histogram
	dispatches       prometheus.Counter
	redispatches     prometheus.Counter
	resends          prometheus.Counter
	inflight         prometheus.Gauge
	waiting          prometheus.Gauge
	backlogBytes     prometheus.Gauge
	backlogFull      prometheus.Counter
	insertSize       prometheus.Gauge
	framesReceived   *prometheus.CounterVec // by kind
	framesDropped    *prometheus.CounterVec // by reason
	eventsPersisted  prometheus.Counter
	storeErrors      *prometheus.CounterVec // by operation
	finished         *prometheus.CounterVec // by status
	storeChecks      *prometheus.CounterVec // by reason
	storeCheckReads  prometheus.Counter
	notesDropped     *prometheus.CounterVec // by note
	closesDropped    prometheus.Counter
	fallbackSeen     prometheus.Gauge
	fallbackReplayed *prometheus.CounterVec // by kind and outcome
	apiRefused       *prometheus.CounterVec // by reason
	auditFailed      prometheus.Counter
	revisionsFailed  prometheus.Counter
	handshakes       prometheus.CounterFunc
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		isLeader:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "clover_server_is_leader", Help: "1 while this server leads."}),
		epoch:         prometheus.NewGauge(prometheus.GaugeOpts{Name: "clover_server_epoch", Help: "Fencing epoch of this server's current leadership term, 0 when not leading."}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{Name: "clover_server_leader_changes_total", Help: "Leadership terms this server started."}),
		fires:         prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clover_fires_total", Help: "Executions fired by this server, by trigger."}, []string{"trigger"}),
		duplicateFires: prometheus.NewCounter(prometheus.CounterOpts{Name: "clover_fires_duplicate_total",
			Help: "Firings not made because their (job, scheduled time) record already existed."}),
		misfires: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clover_misfires_total",
			Help: "Scheduled times missed by more than the misfire threshold, by the misfire policy that handled them."}, []string{"policy"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clover_executions_skipped_total",
			Help: "Firings recorded as skipped, by reason (overlap, misfire)."}, []string{"reason"}),
		retries:     prometheus.NewCounter(prometheus.CounterOpts{Name: "clover_retries_total", Help: "Runs started again after a failure, under a job's retry policy."}),
		orphaned:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "clover_executions_orphaned", Help: "Executions whose client vanished mid-run and that wait for a decision (alert on > 0)."}),
		overdue:     prometheus.NewCounter(prometheus.CounterOpts{Name: "clover_executions_overdue_total", Help: "Runs that lasted longer than their job's overdue limit."}),
		leaseLapses: prometheus.NewCounter(prometheus.CounterOpts{Name: "clover_lease_lapses_total", Help: "Running executions lost because their client stopped renewing their lease or left."}),
		timeouts:    prometheus.NewCounter(prometheus.CounterOpts{Name: "clover_timeouts_total", Help: "Runs the leader marked timed out because no result came after the job's timeout."}),
		stops:       prometheus.NewCounter(prometheus.CounterOpts{Name: "clover_stops_total", Help: "Runs the leader asked a client to stop (operator, overlap replace, timeout)."}),
		fireLateness: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "clover_fire_lateness_seconds",
			Help:    "Time from an execution's scheduled time to its first dispatch.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}),
		dispatches:   prometheus.NewCounter(prometheus.CounterOpts{Name: "clover_dispatches_total", Help: "Dispatch frames sent to clients."}),
		redispatches: prometheus.NewCounter(prometheus.CounterOpts{Name: "clover_redispatches_total", Help: "Executions dispatched again as a new attempt (after a refusal or a departure)."}),
		resends:      prometheus.NewCounter(prometheus.CounterOpts{Name: "clover_dispatch_resends_total", Help: "Unanswered dispatches sent again, unchanged, to the same client."}),
		inflight:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "clover_inflight_executions", Help: "Executions the leader tracks as pending or running."}),
		waiting:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "clover_waiting_executions", Help: "Executions waiting for a client that can take them or for their job's earlier runs: the backlog, bounded by limits.backlog."}),
		backlogBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "clover_backlog_bytes",
			Help: "Memory the leader holds for executions waiting for a client or their job's queue (estimated; bounded by limits.backlog_mib)."}),
		backlogFull: prometheus.NewCounter(prometheus.CounterOpts{Name: "clover_backlog_full_total",
			Help: "Times the leader held back scheduled firings because its backlog was at limits.backlog or limits.backlog_mib."}),
		insertSize: prometheus.NewGauge(prometheus.GaugeOpts{Name: "clover_insert_batch_size",
			Help: "Executions the leader records in one insert, sized to the store's measured latency."}),
		framesReceived: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clover_frames_received_total",
			Help: "Wire frames received, by kind."}, []string{"kind"}),
		framesDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clover_frames_dropped_total",
			Help: "Wire frames dropped, by reason."}, []string{"reason"}),
		eventsPersisted: prometheus.NewCounter(prometheus.CounterOpts{Name: "clover_events_persisted_total", Help: "Execution events written to the store."}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clover_store_errors_total",
			Help: "Failed store operations, by operation."}, []string{"op"}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clover_executions_finished_total",
			Help: "Executions whose end this server recorded, by status."}, []string{"status"}),
		storeChecks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clover_store_checks_total",
			Help: "Executions the leader asked the store about before acting on them, by reason."}, []string{"reason"}),
		storeCheckReads: prometheus.NewCounter(prometheus.CounterOpts{Name: "clover_store_check_reads_total",
			Help: "Store reads the leader made to check or reconcile executions in flight."}),
		closesDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "clover_closes_dropped_total",
			Help: "Ended executions whose close out of the open set was dropped because too many waited; the leader's sweep closes them later."}),
		notesDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clover_leader_notes_dropped_total",
			Help: "Reports dropped because the leader loop's queue was full, by kind."}, []string{"note"}),
		fallbackSeen: prometheus.NewGauge(prometheus.GaugeOpts{Name: "clover_fallback_waiting",
			Help: "Entries the leader last found waiting in the fallback queue (alert on > 0); 0 on followers."}),
		fallbackReplayed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clover_fallback_replayed_total",
			Help: "Fallback queue entries the leader settled, by kind and state (applied, rejected)."}, []string{"kind", "state"}),
		apiRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clover_api_refused_total",
			Help: "API requests refused before their handler, by reason (unauthenticated, forbidden, host, origin, media_type)."}, []string{"reason"}),
		auditFailed:     prometheus.NewCounter(prometheus.CounterOpts{Name: "clover_audit_failures_total", Help: "API writes whose audit entry could not be stored."}),
		revisionsFailed: prometheus.NewCounter(prometheus.CounterOpts{Name: "clover_revision_failures_total", Help: "Job changes whose revision (definition history) could not be stored."}),
		handshakes: prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "clover_curve_handshakes_refused_total",
			Help: "ZeroMQ CURVE handshakes this process's inboxes refused: keys not in the allowlist."},
			func() float64 { return float64(transport.HandshakesRefused()) }),
	}
	reg.MustRegister(m.isLeader, m.epoch, m.leaderChanges, m.fires, m.duplicateFires, m.misfires, m.skipped, m.retries, m.orphaned, m.overdue,
		m.leaseLapses, m.timeouts, m.stops, m.fireLateness,
		m.dispatches, m.redispatches, m.resends, m.inflight, m.waiting, m.backlogBytes, m.backlogFull, m.insertSize, m.framesReceived, m.framesDropped, m.eventsPersisted,
		m.storeErrors, m.closesDropped, m.finished, m.storeChecks, m.storeCheckReads, m.notesDropped, m.fallbackSeen, m.fallbackReplayed,
		m.apiRefused, m.auditFailed, m.revisionsFailed, m.handshakes)
	return m
}
