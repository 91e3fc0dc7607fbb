package api

// syncRoutes: sync settings, runs, dry runs and the directory pickers.
func (s *Server) syncRoutes() []route { return nil }
