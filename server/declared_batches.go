package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/registry"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/workflow"
)

// applyDeclaredBatches records the batches clients declare in code (client.DeclareBatch), by the rules of
// declared jobs: a declaration creates the batch, or updates it while that client (or one that has left)
// maintains it; a batch the API or a job file maintains is never overwritten, and of two live clients
// declaring one name the first keeps it. A client may declare batches of its own jobs only (those stored
// as declared by it): a batch runs its jobs when it chooses, with commands around them, which a client
// may not impose on jobs it does not own.
func (l *leader) applyDeclaredBatches(ctx context.Context, m registry.Member) {
	if len(m.DeclaredBatches) == 0 || l.batchStore == nil {
		return
	}
	// Its jobs' declarations count too: a batch refused for a job the client did not declare is looked
	// at again when it declares more.
	fp := fingerprintBytes(append(append([]byte(nil), m.Declared...), m.DeclaredBatches...))
	if l.declaredBatches[m.ID] == fp {
		return
	}
	var defs []workflow.Definition
	if err := json.Unmarshal(m.DeclaredBatches, &defs); err != nil {
		l.logger.Warn("client declared batches that do not decode; ignored", "client", m.ID, "err", err)
		l.declaredBatches[m.ID] = fp
		return
	}
	if len(defs) > l.cfg.Limits.JobsPerClient {
		l.logger.Error("client declares more batches than limits.jobs_per_client; none applied", "client", m.ID,
			"declared", len(defs), "limit", l.cfg.Limits.JobsPerClient)
		l.declaredBatches[m.ID] = fp
		return
	}
	for _, def := range defs {
		if err := l.applyDeclaredBatch(ctx, m.ID, def); err != nil {
			l.logger.Warn("declared batch not applied", "client", m.ID, "batch", def.Name, "err", err)
			if isTransient(err) {
				return // the store: the next pass tries them all again
			}
		}
	}
	l.declaredBatches[m.ID] = fp
}

func (l *leader) applyDeclaredBatch(ctx context.Context, clientID string, def workflow.Definition) error {
	source := "client:" + clientID
	def.Version, def.Source = 0, source
	if err := def.Validate(); err != nil {
		return errors.Join(errDeclarationRefused, err)
	}
	for _, n := range def.Nodes {
		if err := job.ValidateParams("batch "+def.Name+": node "+n.Name+": params", n.Params); err != nil {
			return errors.Join(errDeclarationRefused, err)
		}
		if len(n.Locks) > 0 || len(n.Resources) > 0 {
			// They are the cluster's, shared by every batch: a client's could hold them from everyone.
			return errors.Join(errDeclarationRefused, fmt.Errorf("batch %s: node %s: a client's batch may not take locks or resources", def.Name, n.Name))
		}
		// The jobs as this term has them: the client's own, just applied, are there.
		e, ok := l.jobs[n.Job]
		switch {
		case !ok:
			return errors.Join(errDeclarationRefused, fmt.Errorf("batch %s: node %s: job %s does not exist", def.Name, n.Name, n.Job))
		case e.spec.Source != source:
			return errors.Join(errDeclarationRefused, fmt.Errorf("batch %s: node %s: job %s is not declared by this client (source %s)", def.Name, n.Name, n.Job, e.spec.Source))
		case e.spec.Mode == job.ModeLocal:
			return errors.Join(errDeclarationRefused, fmt.Errorf("batch %s: node %s: job %s: %w", def.Name, n.Name, n.Job, errLocalMode))
		}
	}
	sctx, cancel := storeCtx(ctx)
	defer cancel()
	cur, err := l.batchStore.GetBatch(sctx, def.Name)
	var expect int64
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return err
	case !strings.HasPrefix(cur.Definition.Source, "client:"):
		return nil // maintained by the API or a job file
	case workflow.Same(cur.Definition, def):
		return nil
	case cur.Definition.Source != source && l.live[strings.TrimPrefix(cur.Definition.Source, "client:")]:
		l.logger.Warn("two clients declare the same batch differently; keeping the first", "batch", def.Name,
			"kept", cur.Definition.Source, "ignored", source)
		return nil
	default:
		expect = cur.Version
	}
	b, err := l.batchStore.PutBatch(sctx, def, expect, source, "declared by "+source, l.now())
	switch {
	case errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrConflict):
		return err // someone wrote it meanwhile: the next pass looks again
	case err != nil:
		return err
	}
	l.logger.Info("declared batch applied", "client", clientID, "batch", def.Name, "version", b.Version)
	l.armBatch(b, false)
	return nil
}
