import ArgumentParser
import Foundation
import Registry

extension PullCommand {
    /// Source credential flags that cannot go together, refused before anything runs (exit 2).
    func validateSourceCredentialFlags() throws {
        if (license != nil || licenseStdin) && (sourceLogin != nil || sourcePassword != nil || sourcePasswordStdin) {
            throw ValidationError("--license and --source-login/--source-password both name the source's credential: pass one of them")
        }
        if license != nil && licenseStdin { throw ValidationError("pass either --license or --license-stdin, not both") }
    }

    /// The source's credential: the license key (flag or D8_MIRROR_LICENSE_TOKEN), else a login
    /// and password, else what the Docker config holds for the host.
    func sourceConfiguration(host: String) throws -> RegistryConfiguration {
        var configuration = transport.configuration(common: common, credential: nil)
        configuration.optionNames.login = "--source-login"
        configuration.optionNames.password = "--source-password"
        // A login given on the command line beats a license key in the environment.
        let loginGiven = sourceLogin != nil || sourcePassword != nil || sourcePasswordStdin
        let environmentLicense = loginGiven ? nil : ProcessInfo.processInfo.environment["D8_MIRROR_LICENSE_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        let license = try licenseStdin ? readSecretFromStdin(option: "--license-stdin", what: "license key") : self.license ?? environmentLicense
        if let license {
            configuration.credential = .licenseKey(license)
            configuration.optionNames.login = "--license"
            configuration.optionNames.password = "D8_MIRROR_LICENSE_TOKEN"
        } else {
            configuration.credential = try resolveCredential(
                host: host, login: sourceLogin, password: sourcePassword, passwordStdin: sourcePasswordStdin,
                names: ("--source-login", "--source-password", "--source-password-stdin"),
                environment: ("D8_MIRROR_SOURCE_LOGIN", "D8_MIRROR_SOURCE_PASSWORD"))
        }
        return configuration
    }
}
