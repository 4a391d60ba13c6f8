import Foundation

/// An error as a sentence a person can read: Foundation's file errors name the file and the reason
/// instead of printing `Error Domain=NSCocoaErrorDomain Code=256 "(null)"`.
package enum ErrorText {
    package static func sentence(_ error: any Error) -> String {
        if let posix = error as? POSIXError { return String(cString: strerror(posix.code.rawValue)) }
        // Swift errors say what they mean through their description; Foundation's need unpacking.
        if !(error is CocoaError), !(type(of: error) is NSError.Type) { return String(describing: error) }
        let ns = error as NSError
        var parts: [String] = []
        let path = (ns.userInfo[NSFilePathErrorKey] as? String) ?? (ns.userInfo[NSURLErrorKey] as? URL)?.path
        // On Linux the underlying error is kept as a Swift error: `as? NSError` on it fails, a bridge works.
        func underlyingError(_ e: NSError) -> NSError? { (e.userInfo[NSUnderlyingErrorKey] as? any Error).map { $0 as NSError } }
        var underlying = underlyingError(ns)
        while let u = underlying, u.domain != NSPOSIXErrorDomain, let next = underlyingError(u) { underlying = next }
        if let u = underlying, u.domain == NSPOSIXErrorDomain, let code = POSIXErrorCode(rawValue: Int32(u.code)) {
            parts.append(String(cString: strerror(code.rawValue)))
        } else if ns.domain == NSPOSIXErrorDomain {
            parts.append(String(cString: strerror(Int32(ns.code))))
        } else if let reason = ns.localizedFailureReason, !reason.isEmpty {
            parts.append(reason)
        } else if ns.domain == NSCocoaErrorDomain {
            parts.append(cocoaReason(ns.code))
        } else {
            parts.append(ns.localizedDescription)
        }
        if let path { parts.append("(\(path))") }
        return parts.joined(separator: " ")
    }

    private static func cocoaReason(_ code: Int) -> String {
        switch code {
        case NSFileNoSuchFileError, NSFileReadNoSuchFileError: return "no such file"
        case NSFileReadNoPermissionError, NSFileWriteNoPermissionError: return "permission denied"
        case NSFileReadCorruptFileError: return "the file is corrupt"
        case NSFileReadInapplicableStringEncodingError: return "the file is not text in the expected encoding"
        case NSFileReadTooLargeError: return "the file is too large"
        case NSFileWriteOutOfSpaceError: return "no space left on the device"
        case NSFileWriteVolumeReadOnlyError: return "the volume is read-only"
        case NSFileWriteFileExistsError: return "the file already exists"
        case NSFileReadUnknownError: return "the file could not be read (is it a folder?)"
        case NSFileWriteUnknownError: return "the file could not be written"
        default: return "file error \(code)"
        }
    }
}
