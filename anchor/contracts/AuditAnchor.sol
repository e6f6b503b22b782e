// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title AuditAnchor: one aggregate Merkle root per anchoring interval, written once, kept forever.
/// @notice auditseal's anchor service calls `anchor(seq, root, logs)` once per interval. `root` is
/// the RFC 9162 tree head over the latest signed checkpoint of every log (docs/ANCHORING.md);
/// `seq` numbers the anchors. The root stays readable with eth_call (`rootOf`) for as long as
/// the chain keeps state, independently of log retention or history expiry.
/// @dev Gas: an anchor writes exactly one new storage slot (the root) and reads two (the caller's
/// authorisation and the root slot it is about to fill), whatever the number of logs. There is
/// deliberately no counter: the caller gives `seq`, and uniqueness is enforced by the root slot
/// being empty. Contiguity of `seq` (no gaps, no skipping ahead) is the anchor service's job, not
/// the contract's. A zero root is refused because zero is how the contract marks "not anchored".
contract AuditAnchor {
    /// @notice The account that authorises and revokes anchorers; set once, by the deployment.
    address public owner;

    /// @notice Accounts allowed to call `anchor`.
    mapping(address account => bool) public isAnchorer;

    mapping(uint64 seq => bytes32 root) private _roots;

    /// @notice Anchor `seq` now holds `root`, the aggregate over `logs` logs. `seq` is indexed so
    /// that a reader can fetch one anchor's event with a topic filter; `root` and `logs` are data.
    event Anchored(uint64 indexed seq, bytes32 root, uint32 logs);
    event AnchorerAuthorised(address indexed account);
    event AnchorerRevoked(address indexed account);

    error NotOwner();
    error NotAnchorer();
    error AlreadyAnchored(uint64 seq);
    error ZeroRoot();

    /// @param anchorers accounts authorised from the start (the deployer passes itself here).
    constructor(address[] memory anchorers) {
        owner = msg.sender;
        for (uint256 i = 0; i < anchorers.length; ++i) {
            isAnchorer[anchorers[i]] = true;
            emit AnchorerAuthorised(anchorers[i]);
        }
    }

    /// @notice Record `root` as anchor `seq`. MUST be called by an authorised anchorer; reverts
    /// with AlreadyAnchored if `seq` holds a root already (a root is never overwritten) and with
    /// ZeroRoot if `root` is zero. `logs` is only emitted, never stored.
    function anchor(uint64 seq, bytes32 root, uint32 logs) external {
        if (!isAnchorer[msg.sender]) revert NotAnchorer();
        if (root == bytes32(0)) revert ZeroRoot();
        if (_roots[seq] != bytes32(0)) revert AlreadyAnchored(seq);
        _roots[seq] = root;
        emit Anchored(seq, root, logs);
    }

    /// @notice The root anchored under `seq`, or zero if `seq` has not been anchored.
    function rootOf(uint64 seq) external view returns (bytes32) {
        return _roots[seq];
    }

    /// @notice Allow `account` to anchor. Owner only; authorising twice is harmless.
    function authorise(address account) external {
        if (msg.sender != owner) revert NotOwner();
        isAnchorer[account] = true;
        emit AnchorerAuthorised(account);
    }

    /// @notice Stop `account` from anchoring; its past anchors stay. Owner only.
    function revoke(address account) external {
        if (msg.sender != owner) revert NotOwner();
        isAnchorer[account] = false;
        emit AnchorerRevoked(account);
    }
}
