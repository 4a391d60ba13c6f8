// The MPI handles StepFlowMPI uses. OpenMPI defines them as macros over global symbols, which do not
// import into Swift, so each gets a static inline accessor. Nothing else belongs here.
#ifndef STEPFLOW_CMPI_SHIM_H
#define STEPFLOW_CMPI_SHIM_H
#include <mpi.h>

static inline MPI_Comm stepflow_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype stepflow_byte(void) { return MPI_BYTE; }
static inline MPI_Datatype stepflow_int(void) { return MPI_INT; }
static inline MPI_Op stepflow_bor(void) { return MPI_BOR; }
static inline MPI_Op stepflow_max(void) { return MPI_MAX; }
static inline MPI_Datatype stepflow_double(void) { return MPI_DOUBLE; }
static inline MPI_Request stepflow_request_null(void) { return MPI_REQUEST_NULL; }
static inline int stepflow_any_source(void) { return MPI_ANY_SOURCE; }
static inline int stepflow_any_tag(void) { return MPI_ANY_TAG; }

#endif
