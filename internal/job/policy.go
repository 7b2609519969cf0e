package job

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// Mode says who fires a job.
type Mode string

const (
	ModeRemote Mode = "remote" // the leader fires it and dispatches it to a client (the default)
	ModeLocal  Mode = "local"  // the declaring client fires it on its own schedule; it is recorded all the same
)

// Misfire policies: what a job owes for fire times missed past the misfire threshold (no leader, all servers
// down, the job paused, the leader stalled).
const (
	MisfireFireOnce = "fire-once" // one catch-up run for any number of missed times (the default)
	MisfireSkip     = "skip"      // none; the missed times are recorded as one skipped execution
	MisfireFireAll  = "fire-all"  // every missed time, the latest Limit of them; older ones are skipped
)

// Overlap policies: what a firing does while an earlier execution of the same job is still open.
const (
	OverlapForbid  = "forbid"  // the firing is skipped and recorded as such (the default)
	OverlapAllow   = "allow"   // it runs alongside
	OverlapReplace = "replace" // the open one is stopped, the new one runs
	OverlapQueue   = "queue"   // it waits until the open ones end, then runs
)

// Routing strategies: which client runs an execution among those that serve its job and have room.
const (
	RouteRoundRobin     = "round-robin"        // in turn (the default)
	RouteRandom         = "random"             // any, at random
	RouteFirst          = "first"              // the first by client id that has room
	RouteConsistentHash = "consistent-hash"    // the same client for the same key while it is there
	RouteLeastBusy      = "least-busy"         // the one with the most free slots
	RouteFailover       = "failover"           // the first live one in a fixed order; waits if it is full
	RouteShardBroadcast = "sharding-broadcast" // one execution per shard, spread over the clients
)

// Backoff kinds for retries.
const (
	BackoffFixed       = "fixed"
	BackoffExponential = "exponential"
)

// Misfire is a job's misfire policy.
type Misfire struct {
	Policy string `json:"policy,omitempty" bson:"policy,omitempty"`
	Limit  int    `json:"limit,omitempty" bson:"limit,omitempty"` // fire-all: at most this many catch-up runs (default 100)
}

// DefaultFireAllLimit bounds fire-all when the job sets no limit.
const DefaultFireAllLimit = 100

// Routing says where a job's executions may run and how one client is chosen.
type Routing struct {
	Strategy string `json:"strategy,omitempty" bson:"strategy,omitempty"`
	// HashKey names the parameter whose value is the consistent-hash key; the job name when empty or unset.
	HashKey string `json:"hash_key,omitempty" bson:"hash_key,omitempty"`
	// Labels a client must carry, all of them (os=windows).
	Labels map[string]string `json:"labels,omitempty" bson:"labels,omitempty"`
	// Clients pins the job to these client ids; for failover, their order is the order of preference.
	Clients []string `json:"clients,omitempty" bson:"clients,omitempty"`
	// Width is how much of a client's resource width one execution uses, besides its slot.
	Width int `json:"width,omitempty" bson:"width,omitempty"`
	// Shards and ShardItems make a sharding-broadcast job: each firing runs one execution per shard.
	// ShardItems names the shards; when set, Shards is its length.
	Shards     int      `json:"shards,omitempty" bson:"shards,omitempty"`
	ShardItems []string `json:"shard_items,omitempty" bson:"shard_items,omitempty"`
}

// Retry is a job's retry policy for failed runs.
type Retry struct {
	Max      int      `json:"max,omitempty" bson:"max,omitempty"` // retries after the first run
	Backoff  string   `json:"backoff,omitempty" bson:"backoff,omitempty"`
	Delay    Duration `json:"delay,omitempty" bson:"delay,omitempty"`         // before the first retry (default 10s)
	MaxDelay Duration `json:"max_delay,omitempty" bson:"max_delay,omitempty"` // exponential cap (default 10m)
	Jitter   float64  `json:"jitter,omitempty" bson:"jitter,omitempty"`       // 0-1: the delay varies by up to this fraction
}

// Overdue raises an alarm, without stopping anything, when a run lasts longer than max(After, Ratio ×
// the average of recent successful runs).
type Overdue struct {
	After Duration `json:"after,omitempty" bson:"after,omitempty"`
	Ratio float64  `json:"ratio,omitempty" bson:"ratio,omitempty"`
}

// Defaults of the retry delays.
const (
	DefaultRetryDelay    = 10 * time.Second
	DefaultRetryMaxDelay = 10 * time.Minute
)

// ShardCount is how many executions one firing of the job makes (1 unless it is sharded).
func (r Routing) ShardCount() int {
	if r.Strategy != RouteShardBroadcast {
		return 1
	}
	if len(r.ShardItems) > 0 {
		return len(r.ShardItems)
	}
	return max(r.Shards, 1)
}

// MaxRuns is how many times one execution may run: the first run and the retries.
func (r Retry) MaxRuns() int { return 1 + max(r.Max, 0) }

// DelayBefore is the wait before run (2 is the first retry). rnd is in [0, 1) and spreads the jitter.
func (r Retry) DelayBefore(run int, rnd float64) time.Duration {
	d := time.Duration(r.Delay)
	if d <= 0 {
		d = DefaultRetryDelay
	}
	if r.Backoff == BackoffExponential {
		limit := time.Duration(r.MaxDelay)
		if limit <= 0 {
			limit = DefaultRetryMaxDelay
		}
		f := float64(d) * math.Pow(2, float64(max(run-2, 0)))
		d = time.Duration(min(f, float64(limit)))
	}
	if r.Jitter > 0 {
		d += time.Duration((rnd*2 - 1) * r.Jitter * float64(d))
	}
	return max(d, 0)
}

// RandomJitter is the default source of rnd for DelayBefore.
func RandomJitter() float64 { return rand.Float64() }

// validatePolicies checks the policy fields of s.
func (s *Spec) validatePolicies() error {
	switch s.Mode {
	case "", ModeRemote, ModeLocal:
	default:
		return fmt.Errorf("job %s: mode %q: want %q or %q", s.Name, s.Mode, ModeRemote, ModeLocal)
	}
	switch s.Misfire.Policy {
	case "", MisfireFireOnce, MisfireSkip, MisfireFireAll:
	default:
		return fmt.Errorf("job %s: misfire.policy %q: want %s, %s or %s", s.Name, s.Misfire.Policy, MisfireFireOnce, MisfireSkip, MisfireFireAll)
	}
	if s.Misfire.Limit < 0 || s.Misfire.Limit > MaxFireAll {
		return fmt.Errorf("job %s: misfire.limit %d: want 0-%d", s.Name, s.Misfire.Limit, MaxFireAll)
	}
	switch s.Overlap {
	case "", OverlapForbid, OverlapAllow, OverlapReplace, OverlapQueue:
	default:
		return fmt.Errorf("job %s: overlap %q: want %s, %s, %s or %s", s.Name, s.Overlap, OverlapForbid, OverlapAllow, OverlapReplace, OverlapQueue)
	}
	r := s.Routing
	switch r.Strategy {
	case "", RouteRoundRobin, RouteRandom, RouteFirst, RouteConsistentHash, RouteLeastBusy, RouteFailover, RouteShardBroadcast:
	default:
		return fmt.Errorf("job %s: routing.strategy %q: want one of %s, %s, %s, %s, %s, %s, %s", s.Name, r.Strategy,
			RouteRoundRobin, RouteRandom, RouteFirst, RouteConsistentHash, RouteLeastBusy, RouteFailover, RouteShardBroadcast)
	}
	if r.Width < 0 {
		return fmt.Errorf("job %s: routing.width %d is negative", s.Name, r.Width)
	}
	if r.Shards < 0 || r.Shards > MaxShards {
		return fmt.Errorf("job %s: routing.shards %d: want 0-%d", s.Name, r.Shards, MaxShards)
	}
	if len(r.ShardItems) > MaxShards {
		return fmt.Errorf("job %s: routing.shard_items has %d items, at most %d", s.Name, len(r.ShardItems), MaxShards)
	}
	if len(r.ShardItems) > 0 && r.Shards != 0 && r.Shards != len(r.ShardItems) {
		return fmt.Errorf("job %s: routing.shards %d differs from the %d shard_items", s.Name, r.Shards, len(r.ShardItems))
	}
	if (r.Shards > 0 || len(r.ShardItems) > 0) && r.Strategy != RouteShardBroadcast {
		return fmt.Errorf("job %s: routing.shards needs routing.strategy %s", s.Name, RouteShardBroadcast)
	}
	for i, id := range r.Clients {
		if id == "" || slices.Index(r.Clients, id) != i {
			return fmt.Errorf("job %s: routing.clients[%d] %q is empty or repeated", s.Name, i, id)
		}
	}
	if s.Retry.Max < 0 || s.Retry.Max > MaxRetries {
		return fmt.Errorf("job %s: retry.max %d: want 0-%d", s.Name, s.Retry.Max, MaxRetries)
	}
	switch s.Retry.Backoff {
	case "", BackoffFixed, BackoffExponential:
	default:
		return fmt.Errorf("job %s: retry.backoff %q: want %s or %s", s.Name, s.Retry.Backoff, BackoffFixed, BackoffExponential)
	}
	if s.Retry.Delay < 0 || s.Retry.MaxDelay < 0 {
		return fmt.Errorf("job %s: retry.delay and retry.max_delay must not be negative", s.Name)
	}
	if s.Retry.Jitter < 0 || s.Retry.Jitter > 1 {
		return fmt.Errorf("job %s: retry.jitter %g: want 0-1", s.Name, s.Retry.Jitter)
	}
	if s.Overdue.After < 0 || s.Overdue.Ratio < 0 {
		return fmt.Errorf("job %s: overdue.after and overdue.ratio must not be negative", s.Name)
	}
	if s.Mode == ModeLocal && r.Strategy == RouteShardBroadcast {
		return fmt.Errorf("job %s: a local job cannot be sharded", s.Name)
	}
	return nil
}

// Limits on policies, so that one definition cannot make a firing unbounded.
const (
	MaxShards  = 1000
	MaxRetries = 100
	MaxFireAll = 1000
)

// HashClient picks, by rendezvous hashing, the client for key among candidates: the same key goes to the
// same client for as long as that client is a candidate, and only the keys of a client that leaves move.
func HashClient(key string, candidates []string) string {
	var best string
	var bestScore uint64
	for _, c := range candidates {
		h := fnv.New64a()
		_, _ = h.Write([]byte(c))
		_, _ = h.Write([]byte{0})
		_, _ = h.Write([]byte(key))
		if s := h.Sum64(); best == "" || s > bestScore {
			best, bestScore = c, s
		}
	}
	return best
}

// Stats are what the leader learns about a job as it runs it: the moving average of its successful runs
// (for overdue alarms) and its misfires. Only the leader writes them; they survive leader changes.
type Stats struct {
	Job           string    `json:"-" bson:"_id"`
	AvgRuntime    Duration  `json:"avg_runtime,omitempty" bson:"avg_runtime,omitempty"`
	Misfires      int64     `json:"misfires,omitempty" bson:"misfires,omitempty"` // fire times handed to the misfire policy
	LastMisfireAt time.Time `json:"last_misfire_at,omitzero" bson:"last_misfire_at,omitempty"`
	UpdatedAt     time.Time `json:"updated_at,omitzero" bson:"updated_at"`
}
