package sim

func (t *Tenant) routes() {
	t.userRoutes()
	t.groupRoutes()
	t.deltaRoutes()
	t.contactRoutes()
	t.presenceRoutes()
	t.batchRoute()
	t.subscriptionRoutes()
	t.deletedItemRoutes()
	t.organizationRoutes()
	t.applicationRoutes()
}
