//go:build !linux

package xdp

// Engine runs the SA processor between AF_XDP sockets (Linux only).
type Engine struct{}

// NewEngine returns ErrNotSupported outside Linux.
func NewEngine(cfg EngineConfig) (*Engine, error) {
	if _, err := cfg.normalize(); err != nil {
		return nil, err
	}
	return nil, ErrNotSupported
}

func (e *Engine) Start() error         { return ErrNotSupported }
func (e *Engine) Stop() error          { return nil }
func (e *Engine) Stats() EngineStats   { return EngineStats{} }
func (e *Engine) WorkerThreads() []int { return nil }

func (e *Engine) Send(queue int, pkts [][]byte) (int, error) { return 0, ErrNotSupported }
