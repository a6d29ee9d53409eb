package gateway

import "time"

// workerIdle is how long a worker waits for its next task before it ends.
const workerIdle = 5 * time.Second

// workers runs tasks on goroutines that outlive them. A send's call chain
// grows a new goroutine's stack two or three times, copying it each time
// (newstack and copystack were ~1 % of a site's CPU in a p2p profile, all
// of it sockets' lanes); a worker keeps its grown stack for the next task.
// A task never waits for a worker: with none idle, it gets a new one. A
// worker with nothing to do for workerIdle ends, so an idle gateway keeps
// none. The zero value is not usable; see newWorkers.
type workers struct {
	tasks chan func()
	idle  time.Duration
}

func newWorkers(idle time.Duration) *workers {
	return &workers{tasks: make(chan func()), idle: idle}
}

// run starts task on an idle worker, or on a new one.
func (w *workers) run(task func()) {
	select {
	case w.tasks <- task:
	default:
		go w.loop(task)
	}
}

func (w *workers) loop(task func()) {
	idle := time.NewTimer(w.idle)
	defer idle.Stop()
	for {
		task()
		task = nil // let what it holds go while this worker waits
		idle.Reset(w.idle)
		select {
		case task = <-w.tasks:
		case <-idle.C:
			return
		}
	}
}
