import Foundation
import TandemCollectives

/// Why a command failed, once its message has been printed (`withCommunicator`): the executable turns it
/// into a non-zero exit status without printing it again.
public struct CommandFailed: Error {}

/// Runs `body` with this process's communicator (MPI under mpirun, one local rank otherwise). An error is
/// printed naming the error and ends the job with a non-zero status on every rank (MPI_Abort under
/// mpirun, so no rank is left waiting in a collective); it is then rethrown as `CommandFailed`.
public func withCommunicator(_ body: (any Communicator) throws -> Void) throws {
    let comm = Communicators.detect()
    do {
        try body(comm)
        (comm as? MPICommunicator)?.shutdown()
    } catch {
        if comm.size > 1 { comm.abort(code: 1, message: "\(error)") }
        FileHandle.standardError.write(Data("tandem: error: \(error)\n".utf8))
        throw CommandFailed()
    }
}
