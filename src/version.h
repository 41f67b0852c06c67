/* version.h: the version string, from configure (PACKAGE_VERSION) or a
 * fallback for builds outside autotools. */
#ifndef SLUICE_VERSION_H
#define SLUICE_VERSION_H

#ifdef PACKAGE_VERSION
#define SLUICE_VERSION PACKAGE_VERSION
#else
#define SLUICE_VERSION "0.1.0-dev"
#endif

#endif
