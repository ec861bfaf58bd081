/* as-probe: the test-only worker that exercises the runtime end to end.
 *
 * It consumes SyntheticProbe events, adds each to a per-probe-id counter
 * (one state write per batch), and publishes a ProbeEchoed event per probe
 * through the outbox. Tests and `make bench` drive it; its behaviour on bad
 * input is what every real worker inherits from the runtime:
 *  - a payload other than SyntheticProbe is dead-lettered (unexpected_payload);
 *  - a probe whose id is empty or unsafe, or whose amount is negative, is
 *    refused by its validator (contract_violation);
 *  - an amount that passes validation but breaks the table's CHECK makes
 *    the batch fail in the database, which the runtime replays message by
 *    message and dead-letters as handler_failed. */
#include "probe.h"

static const as_route_t routes[] = {
    {AFTERSALES__V1__ENVELOPE__PAYLOAD_SYNTHETIC_PROBE, .batch = probe_apply},
};

static const as_service_t probe_service = {
    .name = "probe",
    .summary =
        "as-probe: the runtime's test worker (counts synthetic probes, echoes each through the "
        "outbox)",
    .routes = routes,
    .nroutes = AS_LEN(routes),
    .refuse_unrouted = true,
};

AS_SERVICE_MAIN(probe_service)
