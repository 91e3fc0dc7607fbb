package presence

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	applied       *prometheus.CounterVec
	requests      *prometheus.CounterVec
	notifications *prometheus.CounterVec
	users         *prometheus.GaugeVec
}

var (
	metricsOnce sync.Once
	sharedM     *metrics
)

// m returns the package's metrics (one set per process; register them with Collectors).
func (s *Service) m() *metrics {
	metricsOnce.Do(func() {
		sharedM = &metrics{
			applied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_presence_applied_total",
				Help: "Extension presence changes made from Teams, by path (notification, polling, call-end)."}, []string{"via"}),
			requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_presence_graph_requests_total",
				Help: "Graph presence requests made, by kind (poll, read, set, clear, get)."}, []string{"kind"}),
			notifications: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_presence_notifications_total",
				Help: "Presence change notifications received, by result (accepted, refused)."}, []string{"result"}),
			users: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "switchboard_presence_users",
				Help: "Users whose presence is synced, by PBX and path (notification, polling)."}, []string{"pbx", "path"}),
		}
	})
	return sharedM
}

// Collectors returns the presence metrics for a Prometheus registry.
func (s *Service) Collectors() []prometheus.Collector {
	m := s.m()
	return []prometheus.Collector{m.applied, m.requests, m.notifications, m.users}
}
